//! Reading the maps back: what services, backends, flows, affinities and counters the kernel
//! holds. Used by the loaded [`super::Dataplane`] and, through [`PinnedMaps`], by `netctl` on a
//! node whose agent may be down.

use std::{
    borrow::Borrow,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use aya::maps::{HashMap, IterableMap as _, Map, MapData, PerCpuArray, lpm_trie::LpmTrie};
use strait_ebpf_common::{
    ct::{Ct4Entry, Ct4Key, Ct6Entry, Ct6Key, CtEntry, CtKey, Tuple},
    drop::DropReason,
    maps::{
        AFFINITY_V4, BACKENDS_V4, BACKENDS_V6, CT_V4, CT_V6, DROPS, ENDPOINTS, IPCACHE_V4, POLICY,
        SERVICE_STATS, SERVICES_V4, SERVICES_V6,
    },
    policy::{EndpointValue, IpcacheValue, PolicyKey, PolicyValue},
    service::{
        Backend4, Backend6, Service4Key, Service6Key, ServiceStats, ServiceValue, ipv6_octets,
    },
    sock::{AFFINITY_BY_ADDRESS, Affinity4Key, Affinity4Value},
};

use super::{
    DataplaneError,
    plan::{BackendEntry, Frontend, ServiceKey},
    policy::PolicyMaps,
};

/// Conntrack fill level: LRU evicts the least recently used flow when full, so a pressure near
/// 1 means live flows are being evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtPressure {
    pub entries: u32,
    pub capacity: u32,
}

/// One conntrack entry of either family, with its expiry relative to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtDump {
    pub proto: u8,
    /// `CT_FORWARD` (as the client sent it) or `CT_REPLY` (as the backend replies).
    pub dir: u8,
    /// The flow as packets of this direction carry it: source, destination.
    pub tuple: (SocketAddr, SocketAddr),
    /// What those packets are rewritten to.
    pub nat: (SocketAddr, SocketAddr),
    pub rev_nat: u16,
    /// `CT_F_*` bits.
    pub flags: u8,
    pub packets: u64,
    pub bytes: u64,
    /// Seconds until the entry expires (negative: expired, awaiting eviction).
    pub expires_in: i64,
}

/// An address type of the conntrack maps, read back as an `IpAddr`.
trait CtAddr: Copy {
    fn ip(self) -> IpAddr;
}

impl CtAddr for u32 {
    fn ip(self) -> IpAddr {
        Ipv4Addr::from(u32::from_be(self)).into()
    }
}

impl CtAddr for [u32; 4] {
    fn ip(self) -> IpAddr {
        Ipv6Addr::from(ipv6_octets(self)).into()
    }
}

fn endpoints<A: CtAddr>(tuple: &Tuple<A>) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(tuple.saddr.ip(), u16::from_be(tuple.sport)),
        SocketAddr::new(tuple.daddr.ip(), u16::from_be(tuple.dport)),
    )
}

/// The conntrack maps of both families.
pub(super) struct CtMaps<T> {
    pub(super) v4: HashMap<T, Ct4Key, Ct4Entry>,
    pub(super) v6: HashMap<T, Ct6Key, Ct6Entry>,
}

impl<T: Borrow<MapData>> CtMaps<T> {
    /// Every entry, both families and directions.
    pub(super) fn dump(&self) -> Result<Vec<CtDump>, DataplaneError> {
        let now = monotonic_secs();
        let mut entries: Vec<CtDump> = read_all(&self.v4, CT_V4)?
            .iter()
            .map(|(key, entry)| ct_dump(key, entry, now))
            .collect();
        entries.extend(
            read_all(&self.v6, CT_V6)?
                .iter()
                .map(|(key, entry)| ct_dump(key, entry, now)),
        );
        entries.sort_by_key(|e| (e.dir, e.tuple.0));
        Ok(entries)
    }

    /// How full the maps are, both families together.
    pub(super) fn pressure(&self) -> Result<CtPressure, DataplaneError> {
        let (a, b) = (ct_pressure(&self.v4), ct_pressure(&self.v6));
        Ok(CtPressure {
            entries: a.entries.saturating_add(b.entries),
            capacity: a.capacity.saturating_add(b.capacity),
        })
    }
}

fn ct_dump<A: CtAddr>(key: &CtKey<A>, entry: &CtEntry<A>, now: i64) -> CtDump {
    CtDump {
        proto: key.proto,
        dir: key.dir,
        tuple: endpoints(&key.tuple),
        nat: endpoints(&entry.nat),
        rev_nat: entry.rev_nat,
        flags: entry.flags,
        packets: entry.packets,
        bytes: entry.bytes,
        expires_in: i64::from(entry.expires) - now,
    }
}

/// Seconds on the clock BPF programs read (`bpf_ktime_get_ns`: CLOCK_MONOTONIC).
pub(super) fn monotonic_secs() -> i64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| t.tv_sec())
}

/// One service as read back from the maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDump {
    pub frontend: Frontend,
    pub rev_nat: u16,
    /// Backend count held by the master entry.
    pub count: u16,
    /// Slots 1..=count, as found.
    pub slots: Vec<SlotDump>,
}

/// One backend slot of a service. A slot or backend missing while a writer is mid-update
/// shows as `None` (readers in BPF never index it: the count is raised last).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotDump {
    pub slot: u16,
    pub backend_id: Option<u32>,
    pub backend: Option<SocketAddr>,
}

/// One backend as the backend map holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendDump {
    pub id: u32,
    pub address: SocketAddr,
    pub proto: u8,
    pub flags: u8,
}

/// Who an affinity entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AffinityClient {
    /// A pod, by its network namespace cookie (socket-level translation).
    NetnsCookie(u64),
    /// A client outside the node, by address (per-packet path).
    Address(Ipv4Addr),
}

/// One session-affinity entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AffinityDump {
    pub client: AffinityClient,
    pub rev_nat: u16,
    pub backend_id: u32,
    /// Seconds since the client last used it.
    pub idle_secs: i64,
}

/// Traffic counters of one service frontend, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceStatsDump {
    pub frontend: Frontend,
    pub rev_nat: u16,
    pub stats: ServiceStats,
}

/// Reads the counters of the given services (by their reverse-NAT index: one read each, not a
/// walk over all 65,536 slots).
pub(super) fn read_service_stats<T: Borrow<MapData>>(
    stats: &PerCpuArray<T, ServiceStats>,
    services: &[ServiceDump],
) -> Result<Vec<ServiceStatsDump>, DataplaneError> {
    services
        .iter()
        .map(|service| {
            let per_cpu = stats
                .get(&u32::from(service.rev_nat), 0)
                .map_err(|source| DataplaneError::MapRead {
                    map: SERVICE_STATS,
                    source,
                })?;
            let total = per_cpu
                .iter()
                .fold(ServiceStats::default(), |sum, cpu| ServiceStats {
                    flows: sum.flows + cpu.flows,
                    packets: sum.packets + cpu.packets,
                    bytes: sum.bytes + cpu.bytes,
                });
            Ok(ServiceStatsDump {
                frontend: service.frontend,
                rev_nat: service.rev_nat,
                stats: total,
            })
        })
        .collect()
}

/// Packets dropped (or connections refused) for one reason, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropCount {
    pub reason: DropReason,
    pub packets: u64,
}

/// Reads the services and drop counters of a running dataplane from its pinned maps, without
/// loading anything: what `netctl bpf dump` shows.
pub struct PinnedMaps {
    lb: LbMaps<MapData>,
    ct: CtMaps<MapData>,
    affinity: HashMap<MapData, Affinity4Key, Affinity4Value>,
    drops: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, ServiceStats>,
    policy: PolicyMapSet<MapData>,
}

impl std::fmt::Debug for PinnedMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedMaps").finish_non_exhaustive()
    }
}

impl PinnedMaps {
    /// Opens the maps pinned under `pin_dir`.
    pub fn open(pin_dir: &Path) -> Result<Self, DataplaneError> {
        Ok(Self {
            lb: LbMaps {
                services4: open_pinned(pin_dir, SERVICES_V4)?,
                backends4: open_pinned(pin_dir, BACKENDS_V4)?,
                services6: open_pinned(pin_dir, SERVICES_V6)?,
                backends6: open_pinned(pin_dir, BACKENDS_V6)?,
            },
            ct: CtMaps {
                v4: open_pinned(pin_dir, CT_V4)?,
                v6: open_pinned(pin_dir, CT_V6)?,
            },
            affinity: open_pinned(pin_dir, AFFINITY_V4)?,
            drops: open_pinned(pin_dir, DROPS)?,
            stats: open_pinned(pin_dir, SERVICE_STATS)?,
            policy: PolicyMapSet {
                ipcache: open_pinned(pin_dir, IPCACHE_V4)?,
                policy: open_pinned(pin_dir, POLICY)?,
                endpoints: open_pinned(pin_dir, ENDPOINTS)?,
            },
        })
    }

    /// The NetworkPolicy maps: ipcache, per-endpoint entries, endpoints.
    pub fn policy(&self) -> Result<PolicyMaps, DataplaneError> {
        self.policy.read()
    }

    /// Traffic counters of every service, summed over CPUs.
    pub fn service_stats(&self) -> Result<Vec<ServiceStatsDump>, DataplaneError> {
        read_service_stats(&self.stats, &self.services()?)
    }

    /// Every backend by id.
    pub fn backends(&self) -> Result<Vec<BackendDump>, DataplaneError> {
        let mut backends: Vec<BackendDump> = self
            .lb
            .backends()?
            .into_iter()
            .filter_map(|(id, b)| {
                let (address, protocol) = b.addr()?;
                Some(BackendDump {
                    id,
                    address,
                    proto: protocol.number(),
                    flags: b.flags(),
                })
            })
            .collect();
        backends.sort_by_key(|b| b.id);
        Ok(backends)
    }

    /// Session-affinity entries.
    pub fn affinity(&self) -> Result<Vec<AffinityDump>, DataplaneError> {
        let now = monotonic_secs();
        let mut entries: Vec<AffinityDump> = read_all(&self.affinity, AFFINITY_V4)?
            .into_iter()
            .map(|(key, value)| AffinityDump {
                client: if key.client & AFFINITY_BY_ADDRESS != 0 {
                    AffinityClient::Address(Ipv4Addr::from(u32::from_be(
                        (key.client & u64::from(u32::MAX)) as u32,
                    )))
                } else {
                    AffinityClient::NetnsCookie(key.client)
                },
                rev_nat: key.rev_nat,
                backend_id: value.backend_id,
                idle_secs: now - i64::from(value.last_used),
            })
            .collect();
        entries.sort_by_key(|e| (e.rev_nat, e.backend_id));
        Ok(entries)
    }

    /// Conntrack entries, both directions.
    pub fn ct(&self) -> Result<Vec<CtDump>, DataplaneError> {
        self.ct.dump()
    }

    /// How full the conntrack map is.
    pub fn ct_pressure(&self) -> Result<CtPressure, DataplaneError> {
        self.ct.pressure()
    }

    /// The services as the maps hold them.
    pub fn services(&self) -> Result<Vec<ServiceDump>, DataplaneError> {
        self.lb.services()
    }

    /// Drop counters, summed over CPUs.
    pub fn drops(&self) -> Result<Vec<DropCount>, DataplaneError> {
        read_drops(&self.drops)
    }
}

pub(super) fn open_pinned<T>(pin_dir: &Path, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let data = MapData::from_pin(pin_dir.join(name))
        .map_err(|source| DataplaneError::MapRead { map: name, source })?;
    let map =
        Map::from_map_data(data).map_err(|source| DataplaneError::MapType { map: name, source })?;
    T::try_from(map).map_err(|source| DataplaneError::MapType { map: name, source })
}

/// The three NetworkPolicy maps, of a loaded object or opened from their pins.
pub(super) struct PolicyMapSet<T> {
    pub(super) ipcache: LpmTrie<T, u32, IpcacheValue>,
    pub(super) policy: LpmTrie<T, PolicyKey, PolicyValue>,
    pub(super) endpoints: HashMap<T, u32, EndpointValue>,
}

impl<T: Borrow<MapData>> PolicyMapSet<T> {
    /// Everything the maps hold.
    pub(super) fn read(&self) -> Result<PolicyMaps, DataplaneError> {
        let read = |map| move |source| DataplaneError::MapRead { map, source };
        let mut maps = PolicyMaps::default();
        for item in self.ipcache.iter() {
            let (key, value) = item.map_err(read(IPCACHE_V4))?;
            maps.ipcache
                .insert((key.prefix_len(), key.data()), value.identity);
        }
        for item in self.policy.iter() {
            let (key, value) = item.map_err(read(POLICY))?;
            maps.policy
                .insert((key.prefix_len(), key.data()), value.rule);
        }
        for item in self.endpoints.iter() {
            let (ifindex, value) = item.map_err(read(ENDPOINTS))?;
            maps.endpoints.insert(ifindex, value);
        }
        Ok(maps)
    }
}

fn ct_pressure<T: Borrow<MapData>, K: aya::Pod, V: aya::Pod>(ct: &HashMap<T, K, V>) -> CtPressure {
    let capacity = ct.map().info().map_or(0, |info| info.max_entries());
    let entries = ct.keys().filter(Result::is_ok).count();
    CtPressure {
        entries: u32::try_from(entries).unwrap_or(u32::MAX),
        capacity,
    }
}

pub(super) fn read_all<T, K, V>(
    map: &HashMap<T, K, V>,
    name: &'static str,
) -> Result<Vec<(K, V)>, DataplaneError>
where
    T: Borrow<MapData>,
    K: aya::Pod,
    V: aya::Pod,
{
    map.iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| DataplaneError::MapRead { map: name, source })
}

/// The services in `entries` (both families), with their slots resolved against `backends`.
pub(super) fn dump_services(
    entries: Vec<(ServiceKey, ServiceValue)>,
    backends: Vec<(u32, BackendEntry)>,
) -> Vec<ServiceDump> {
    let entries: std::collections::HashMap<ServiceKey, ServiceValue> =
        entries.into_iter().collect();
    let backends: std::collections::HashMap<u32, BackendEntry> = backends.into_iter().collect();
    let mut dumps = Vec::new();
    for (key, master) in entries.iter().filter(|(k, _)| k.slot() == 0) {
        let Some(frontend) = Frontend::from_key(key) else {
            continue;
        };
        let slots = (1..=master.count)
            .map(|slot| {
                let backend_id = entries.get(&key.with_slot(slot)).map(|v| v.backend_id);
                let backend = backend_id
                    .and_then(|id| backends.get(&id))
                    .and_then(BackendEntry::addr)
                    .map(|(addr, _)| addr);
                SlotDump {
                    slot,
                    backend_id,
                    backend,
                }
            })
            .collect();
        dumps.push(ServiceDump {
            frontend,
            rev_nat: master.rev_nat,
            count: master.count,
            slots,
        });
    }
    dumps.sort_by_key(|d| d.frontend);
    dumps
}

/// The service and backend maps of both families.
pub(super) struct LbMaps<T> {
    pub(super) services4: HashMap<T, Service4Key, ServiceValue>,
    pub(super) backends4: HashMap<T, u32, Backend4>,
    pub(super) services6: HashMap<T, Service6Key, ServiceValue>,
    pub(super) backends6: HashMap<T, u32, Backend6>,
}

impl<T: Borrow<MapData>> LbMaps<T> {
    /// Every service map entry, both families.
    pub(super) fn entries(&self) -> Result<Vec<(ServiceKey, ServiceValue)>, DataplaneError> {
        let mut entries: Vec<(ServiceKey, ServiceValue)> = read_all(&self.services4, SERVICES_V4)?
            .into_iter()
            .map(|(k, v)| (ServiceKey::V4(k), v))
            .collect();
        entries.extend(
            read_all(&self.services6, SERVICES_V6)?
                .into_iter()
                .map(|(k, v)| (ServiceKey::V6(k), v)),
        );
        Ok(entries)
    }

    /// Every backend, both families.
    pub(super) fn backends(&self) -> Result<Vec<(u32, BackendEntry)>, DataplaneError> {
        let mut backends: Vec<(u32, BackendEntry)> = read_all(&self.backends4, BACKENDS_V4)?
            .into_iter()
            .map(|(id, b)| (id, BackendEntry::V4(b)))
            .collect();
        backends.extend(
            read_all(&self.backends6, BACKENDS_V6)?
                .into_iter()
                .map(|(id, b)| (id, BackendEntry::V6(b))),
        );
        Ok(backends)
    }

    /// The services as the maps hold them.
    pub(super) fn services(&self) -> Result<Vec<ServiceDump>, DataplaneError> {
        Ok(dump_services(self.entries()?, self.backends()?))
    }
}

pub(super) fn read_drops<T: Borrow<MapData>>(
    counters: &PerCpuArray<T, u64>,
) -> Result<Vec<DropCount>, DataplaneError> {
    DropReason::ALL
        .iter()
        .map(|&reason| {
            let per_cpu = counters
                .get(&(reason as u32), 0)
                .map_err(|source| DataplaneError::MapRead { map: DROPS, source })?;
            Ok(DropCount {
                reason,
                packets: per_cpu.iter().sum(),
            })
        })
        .collect()
}
