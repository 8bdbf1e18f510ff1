//! The loaded BPF object: programs, pinned maps, attachments.

use std::{
    borrow::Borrow,
    fs::{self, File},
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, Map, MapData, PerCpuArray},
    programs::{
        CgroupAttachMode, CgroupSockAddr, SchedClassifier, TestRun as _, TestRunOptions,
        cgroup_sock_addr::CgroupSockAddrLinkId,
    },
};
use strait_ebpf_common::{
    drop::DropReason,
    maps::{BACKENDS_V4, DROPS, SERVICES_V4},
    service::{Backend4, Service4Key, Service4Value},
};

use super::{
    DataplaneError,
    plan::{Frontend, MapOp, ServiceSpec, ServiceTable},
};

/// The object built from `ebpf/programs` by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/strait"));

/// cgroup `connect4`: service translation at the socket.
const CONNECT4: &str = "strait_connect4";
/// tc on node devices: the per-packet service path.
const FROM_NETDEV: &str = "strait_from_netdev";

/// Where the dataplane keeps its pinned state.
#[derive(Clone, Debug)]
pub struct DataplaneConfig {
    /// Directory (on bpffs) holding the pinned maps. Production: /sys/fs/bpf/strait.
    pub pin_dir: PathBuf,
}

/// The outcome of one `BPF_PROG_TEST_RUN` of a packet program.
#[derive(Debug)]
pub struct ProgramRun {
    /// The program's return value (a `TC_ACT_*` verdict for tc programs).
    pub verdict: u32,
    /// The packet as the program left it.
    pub packet: Vec<u8>,
    /// Average time per run, as the kernel measured it.
    pub duration: Duration,
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
    pub backend: Option<SocketAddrV4>,
}

/// Packets dropped (or connections refused) for one reason, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropCount {
    pub reason: DropReason,
    pub packets: u64,
}

/// The node's loaded dataplane. Dropping it detaches its programs; pinned maps stay, so a
/// restarted agent finds the services it wrote.
pub struct Dataplane {
    ebpf: Ebpf,
    config: DataplaneConfig,
    table: ServiceTable,
    cgroup_links: Vec<(PathBuf, CgroupSockAddrLinkId)>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("pin_dir", &self.config.pin_dir)
            .field("cgroups", &self.cgroup_links.len())
            .finish_non_exhaustive()
    }
}

impl Dataplane {
    /// Loads the object, reusing maps already pinned under the pin directory, and loads its
    /// programs into the kernel without attaching them.
    pub fn load(config: DataplaneConfig) -> Result<Self, DataplaneError> {
        strait_host::mounts::ensure_bpffs()?;
        fs::create_dir_all(&config.pin_dir).map_err(|source| DataplaneError::PinDir {
            path: config.pin_dir.clone(),
            source,
        })?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&config.pin_dir)
            .load(OBJECT)
            .map_err(|source| DataplaneError::Load {
                pin_dir: config.pin_dir.clone(),
                source: Box::new(source),
            })?;

        let connect4: &mut CgroupSockAddr = program(&mut ebpf, CONNECT4)?;
        connect4
            .load()
            .map_err(|source| DataplaneError::LoadProgram {
                program: CONNECT4,
                source,
            })?;
        let from_netdev: &mut SchedClassifier = program(&mut ebpf, FROM_NETDEV)?;
        from_netdev
            .load()
            .map_err(|source| DataplaneError::LoadProgram {
                program: FROM_NETDEV,
                source,
            })?;

        let services = service_map(&ebpf)?;
        let backends = backend_map(&ebpf)?;
        let table = ServiceTable::recover(
            read_all(&services, SERVICES_V4)?,
            read_all(&backends, BACKENDS_V4)?,
        );
        Ok(Self {
            ebpf,
            config,
            table,
            cgroup_links: Vec::new(),
        })
    }

    /// The pin directory in use.
    pub fn pin_dir(&self) -> &Path {
        &self.config.pin_dir
    }

    /// Attaches socket-level service translation to a cgroup2 directory: every process in
    /// that subtree then reaches services through the maps.
    pub fn attach_cgroup(&mut self, cgroup: &Path) -> Result<(), DataplaneError> {
        let dir = File::open(cgroup).map_err(|source| DataplaneError::OpenCgroup {
            path: cgroup.to_path_buf(),
            source,
        })?;
        let connect4: &mut CgroupSockAddr = program(&mut self.ebpf, CONNECT4)?;
        let link = connect4
            .attach(dir, CgroupAttachMode::default())
            .map_err(|source| DataplaneError::Attach {
                program: CONNECT4,
                target: cgroup.display().to_string(),
                source,
            })?;
        self.cgroup_links.push((cgroup.to_path_buf(), link));
        Ok(())
    }

    /// Detaches socket-level translation from every cgroup it was attached to.
    pub fn detach_cgroups(&mut self) -> Result<(), DataplaneError> {
        let links = std::mem::take(&mut self.cgroup_links);
        let connect4: &mut CgroupSockAddr = program(&mut self.ebpf, CONNECT4)?;
        for (path, link) in links {
            connect4
                .detach(link)
                .map_err(|source| DataplaneError::Attach {
                    program: CONNECT4,
                    target: format!("{} (detach)", path.display()),
                    source,
                })?;
        }
        Ok(())
    }

    /// Makes the maps hold `spec`, writing in the order that keeps readers safe.
    pub fn upsert_service(&mut self, spec: &ServiceSpec) -> Result<(), DataplaneError> {
        let ops = self.table.upsert(spec)?;
        self.apply(&ops)
    }

    /// Removes a service; unknown services are a no-op.
    pub fn delete_service(&mut self, frontend: Frontend) -> Result<(), DataplaneError> {
        let ops = self.table.delete(frontend);
        self.apply(&ops)
    }

    fn apply(&mut self, ops: &[MapOp]) -> Result<(), DataplaneError> {
        for op in ops {
            match op {
                MapOp::PutBackend { id, backend } => {
                    let mut map = backend_map_mut(&mut self.ebpf)?;
                    map.insert(id, backend, 0)
                        .map_err(|source| write_error(BACKENDS_V4, id, source))?;
                }
                MapOp::DeleteBackend { id } => {
                    let mut map = backend_map_mut(&mut self.ebpf)?;
                    map.remove(id)
                        .map_err(|source| write_error(BACKENDS_V4, id, source))?;
                }
                MapOp::PutService { key, value } => {
                    let mut map = service_map_mut(&mut self.ebpf)?;
                    map.insert(key, value, 0)
                        .map_err(|source| write_error(SERVICES_V4, key, source))?;
                }
                MapOp::DeleteService { key } => {
                    let mut map = service_map_mut(&mut self.ebpf)?;
                    map.remove(key)
                        .map_err(|source| write_error(SERVICES_V4, key, source))?;
                }
            }
        }
        Ok(())
    }

    /// The services as the maps hold them.
    pub fn dump_services(&self) -> Result<Vec<ServiceDump>, DataplaneError> {
        dump_services(&service_map(&self.ebpf)?, &backend_map(&self.ebpf)?)
    }

    /// Drop counters, summed over CPUs.
    pub fn drops(&self) -> Result<Vec<DropCount>, DataplaneError> {
        let map = self
            .ebpf
            .map(DROPS)
            .ok_or(DataplaneError::MissingMap(DROPS))?;
        let counters = PerCpuArray::<_, u64>::try_from(map)
            .map_err(|source| DataplaneError::MapType { map: DROPS, source })?;
        read_drops(&counters)
    }

    /// Runs the per-packet service program once on `packet` with `BPF_PROG_TEST_RUN`, as the
    /// kernel would on a packet arriving at a node device. Used by packet tests and benchmarks;
    /// `repeat` runs it that many times and reports the mean duration.
    pub fn run_from_netdev(
        &mut self,
        packet: &[u8],
        repeat: u32,
    ) -> Result<ProgramRun, DataplaneError> {
        let prog: &mut SchedClassifier = program(&mut self.ebpf, FROM_NETDEV)?;
        // Room for programs that grow the packet (encapsulation, later).
        let mut out = vec![0u8; packet.len() + 256];
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(packet),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::new()
            })
            .map_err(|source| DataplaneError::TestRun {
                program: FROM_NETDEV,
                source,
            })?;
        out.truncate(result.data_size_out as usize);
        Ok(ProgramRun {
            verdict: result.return_value,
            packet: out,
            duration: result.duration,
        })
    }
}

/// Reads the services and drop counters of a running dataplane from its pinned maps, without
/// loading anything: what `netctl bpf dump` shows.
pub struct PinnedMaps {
    services: HashMap<MapData, Service4Key, Service4Value>,
    backends: HashMap<MapData, u32, Backend4>,
    drops: PerCpuArray<MapData, u64>,
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
            services: open_pinned(pin_dir, SERVICES_V4)?,
            backends: open_pinned(pin_dir, BACKENDS_V4)?,
            drops: open_pinned(pin_dir, DROPS)?,
        })
    }

    /// The services as the maps hold them.
    pub fn services(&self) -> Result<Vec<ServiceDump>, DataplaneError> {
        dump_services(&self.services, &self.backends)
    }

    /// Drop counters, summed over CPUs.
    pub fn drops(&self) -> Result<Vec<DropCount>, DataplaneError> {
        read_drops(&self.drops)
    }
}

fn open_pinned<T>(pin_dir: &Path, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let data = MapData::from_pin(pin_dir.join(name))
        .map_err(|source| DataplaneError::MapRead { map: name, source })?;
    let map =
        Map::from_map_data(data).map_err(|source| DataplaneError::MapType { map: name, source })?;
    T::try_from(map).map_err(|source| DataplaneError::MapType { map: name, source })
}

fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, DataplaneError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program>,
{
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or(DataplaneError::MissingProgram(name))
}

fn service_map(
    ebpf: &Ebpf,
) -> Result<HashMap<&MapData, Service4Key, Service4Value>, DataplaneError> {
    let map = ebpf
        .map(SERVICES_V4)
        .ok_or(DataplaneError::MissingMap(SERVICES_V4))?;
    HashMap::try_from(map).map_err(|source| DataplaneError::MapType {
        map: SERVICES_V4,
        source,
    })
}

fn service_map_mut(
    ebpf: &mut Ebpf,
) -> Result<HashMap<&mut MapData, Service4Key, Service4Value>, DataplaneError> {
    let map = ebpf
        .map_mut(SERVICES_V4)
        .ok_or(DataplaneError::MissingMap(SERVICES_V4))?;
    HashMap::try_from(map).map_err(|source| DataplaneError::MapType {
        map: SERVICES_V4,
        source,
    })
}

fn backend_map(ebpf: &Ebpf) -> Result<HashMap<&MapData, u32, Backend4>, DataplaneError> {
    let map = ebpf
        .map(BACKENDS_V4)
        .ok_or(DataplaneError::MissingMap(BACKENDS_V4))?;
    HashMap::try_from(map).map_err(|source| DataplaneError::MapType {
        map: BACKENDS_V4,
        source,
    })
}

fn backend_map_mut(
    ebpf: &mut Ebpf,
) -> Result<HashMap<&mut MapData, u32, Backend4>, DataplaneError> {
    let map = ebpf
        .map_mut(BACKENDS_V4)
        .ok_or(DataplaneError::MissingMap(BACKENDS_V4))?;
    HashMap::try_from(map).map_err(|source| DataplaneError::MapType {
        map: BACKENDS_V4,
        source,
    })
}

fn write_error(
    map: &'static str,
    key: &impl std::fmt::Debug,
    source: aya::maps::MapError,
) -> DataplaneError {
    DataplaneError::MapWrite {
        map,
        key: format!("{key:?}"),
        source,
    }
}

fn read_all<T, K, V>(
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

fn dump_services<T: Borrow<MapData>>(
    services: &HashMap<T, Service4Key, Service4Value>,
    backends: &HashMap<T, u32, Backend4>,
) -> Result<Vec<ServiceDump>, DataplaneError> {
    let entries: std::collections::HashMap<Service4Key, Service4Value> =
        read_all(services, SERVICES_V4)?.into_iter().collect();
    let backends: std::collections::HashMap<u32, Backend4> =
        read_all(backends, BACKENDS_V4)?.into_iter().collect();
    let mut dumps = Vec::new();
    for (key, master) in entries.iter().filter(|(k, _)| k.slot == 0) {
        let Some(frontend) = Frontend::from_key(key) else {
            continue;
        };
        let slots = (1..=master.count)
            .map(|slot| {
                let backend_id = entries
                    .get(&Service4Key { slot, ..*key })
                    .map(|v| v.backend_id);
                let backend = backend_id.and_then(|id| backends.get(&id)).map(|b| {
                    SocketAddrV4::new(
                        Ipv4Addr::from(u32::from_be(b.address)),
                        u16::from_be(b.port),
                    )
                });
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
    Ok(dumps)
}

fn read_drops<T: Borrow<MapData>>(
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
