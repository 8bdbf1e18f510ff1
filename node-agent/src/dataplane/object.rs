//! The loaded BPF object: programs, pinned maps, attachments.

use std::{
    fs::{self, File},
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, MapData, PerCpuArray, RingBuf,
        lpm_trie::{Key as LpmKey, LpmTrie},
    },
    programs::{
        CgroupAttachMode, CgroupSockAddr, SchedClassifier, TcAttachType, TestRun as _,
        TestRunOptions,
        links::{FdLink, PinnedLink},
    },
};
use strait_ebpf_common::{
    config::{LAYOUT_VERSION, NodeConfig},
    maps::{
        BACKENDS_V4, BACKENDS_V6, CONFIG, CT_V4, CT_V6, DROPS, ENDPOINTS, FLOWS, FLOWS_LOST,
        IPCACHE_V4, MAGLEV_SIZE, MAGLEV_TABLES, MAGLEV_V4, POLICY, SERVICE_STATS, SERVICES_V4,
        SERVICES_V6,
    },
    policy::{EndpointValue, IpcacheValue, PolicyKey, PolicyValue},
    service::{Backend4, Backend6, ServiceStats, ServiceValue, ipv6_words},
};
use tracing::warn;

use super::{
    DataplaneError,
    dump::{
        CtDump, CtMaps, CtPressure, DropCount, LbMaps, PolicyMapSet, ServiceDump, ServiceStatsDump,
        open_pinned, read_drops, read_service_stats,
    },
    plan::{BackendEntry, Frontend, MapOp, PodCidr, ServiceKey, ServiceSpec, ServiceTable},
    policy::{PolicyMaps, PolicyOp},
};

/// The object built from `ebpf/programs` by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/strait"));

/// The cgroup sock_addr programs: translation at `connect`/`sendmsg`, the service address
/// shown again at `recvmsg`/`getpeername`, for IPv4 and IPv6 sockets.
const SOCK_PROGRAMS: [&str; 8] = [
    "strait_connect4",
    "strait_sendmsg4",
    "strait_recvmsg4",
    "strait_getpeername4",
    "strait_connect6",
    "strait_sendmsg6",
    "strait_recvmsg6",
    "strait_getpeername6",
];
/// tc ingress on the uplink: the per-packet service path.
const FROM_NETDEV: &str = "strait_from_netdev";
/// tc egress on the uplink: replies of translated flows.
const TO_NETDEV: &str = "strait_to_netdev";
/// tc ingress on a pod's host-side veth: the pod's egress policy.
const FROM_POD: &str = "strait_from_pod";
/// tc egress on a pod's host-side veth: the pod's ingress policy.
const TO_POD: &str = "strait_to_pod";

/// Most entries the Maglev array may have (64 M backend ids: 256 MiB).
const MAGLEV_MAX_ENTRIES: u32 = 1 << 26;

/// Default source port range for SNAT, clear of the kernel's default ephemeral range
/// (32768–60999) so node-local sockets and translated flows do not compete.
const SNAT_PORTS: (u16, u16) = (61_000, 65_535);

/// Where the dataplane keeps its pinned state, and the node facts the programs need.
#[derive(Clone, Debug)]
pub struct DataplaneConfig {
    /// Directory (on bpffs) holding the pinned maps. Production: /sys/fs/bpf/strait.
    pub pin_dir: PathBuf,
    /// The node's addresses: the source of flows source-NATed to remote backends.
    pub node_ipv4: Option<Ipv4Addr>,
    pub node_ipv6: Option<Ipv6Addr>,
    /// The node's pod ranges (one per family): backends inside them are local.
    pub pod_cidrs: Vec<PodCidr>,
    /// Conntrack entries when the map is first created; `None` sizes it from memory.
    pub ct_entries: Option<u32>,
    /// Entries per Maglev table (a prime; 0 disables Maglev) and the number of tables.
    pub maglev_size: u32,
    pub maglev_tables: u16,
}

impl DataplaneConfig {
    /// A configuration with only a pin directory: no node address, conntrack sized from memory.
    pub fn new(pin_dir: impl Into<PathBuf>) -> Self {
        Self {
            pin_dir: pin_dir.into(),
            node_ipv4: None,
            node_ipv6: None,
            pod_cidrs: Vec::new(),
            ct_entries: None,
            maglev_size: MAGLEV_SIZE,
            maglev_tables: MAGLEV_TABLES as u16,
        }
    }
}

/// What [`Dataplane::load`] found under the pin directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Nothing was pinned: new maps were created.
    Fresh,
    /// Maps of this layout were pinned and are reused, with their contents and flows.
    Adopted,
    /// Maps of another layout version were pinned; they were unpinned and replaced (flows
    /// through them are lost, which only a layout-changing upgrade causes).
    Replaced { found: Option<u32> },
}

/// Conntrack entries for a host with `mem_total` bytes: 0.25 % of memory (Cilium's dynamic
/// sizing ratio) at ~128 bytes per entry, never under 65,536 nor over 4 M, rounded down to a
/// power of two.
pub fn ct_entries_for_memory(mem_total: u64) -> u32 {
    const FLOOR: u64 = 1 << 16;
    const CEILING: u64 = 1 << 22;
    let entries = (mem_total / 400 / 128).clamp(FLOOR, CEILING);
    1 << (63 - entries.leading_zeros())
}

fn mem_total() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
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

/// The node's loaded dataplane. Its maps and attachments are pinned: dropping it (or the agent
/// exiting) leaves the programs attached and the maps in place, so traffic keeps flowing and a
/// restarted agent adopts them. Removing the pin directory detaches everything.
pub struct Dataplane {
    ebpf: Ebpf,
    config: DataplaneConfig,
    adoption: Adoption,
    table: ServiceTable,
    /// This dataplane's attachments, pinned under `<pin dir>/links` so they outlive the process.
    links: Vec<Attachment>,
    /// Attachments an earlier agent pinned, held open (and still pinned) so traffic keeps
    /// flowing until this agent has attached its own; then [`Self::release_previous`]. Nothing
    /// is unpinned before this agent's own link takes the pin's place, so an agent that fails
    /// to load or attach leaves the previous one's programs in place.
    previous: Vec<(PathBuf, PinnedLink)>,
    /// Previous attachments whose pin this agent took over, kept attached until released.
    replaced: Vec<FdLink>,
}

/// Where a program is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Cgroup(PathBuf),
    Netdev(String),
    /// A pod's host-side veth.
    Endpoint(String),
}

struct Attachment {
    target: Target,
    link: PinnedLink,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("pin_dir", &self.config.pin_dir)
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

impl Dataplane {
    /// Loads the object, reusing maps already pinned under the pin directory when their layout
    /// version matches, and loads its programs into the kernel without attaching them.
    pub fn load(config: DataplaneConfig) -> Result<Self, DataplaneError> {
        strait_host::mounts::ensure_bpffs()?;
        fs::create_dir_all(&config.pin_dir).map_err(|source| DataplaneError::PinDir {
            path: config.pin_dir.clone(),
            source,
        })?;
        let maglev_entries = u32::from(config.maglev_tables)
            .checked_mul(config.maglev_size)
            .filter(|entries| *entries <= MAGLEV_MAX_ENTRIES)
            .ok_or(DataplaneError::MaglevTooLarge {
                tables: config.maglev_tables,
                size: config.maglev_size,
                max: MAGLEV_MAX_ENTRIES,
            })?;
        let adoption = adopt_or_replace(&config.pin_dir)?;
        let previous = take_pinned_links(&config.pin_dir)?;
        let ct_entries = config
            .ct_entries
            .unwrap_or_else(|| ct_entries_for_memory(mem_total().unwrap_or(0)));
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&config.pin_dir)
            // Only applies when the map is created; an adopted map keeps its size.
            .map_max_entries(CT_V4, ct_entries)
            .map_max_entries(CT_V6, ct_entries)
            .map_max_entries(MAGLEV_V4, maglev_entries.max(1))
            .load(OBJECT)
            .map_err(|source| DataplaneError::Load {
                pin_dir: config.pin_dir.clone(),
                source: Box::new(source),
            })?;

        for name in SOCK_PROGRAMS {
            let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            prog.load().map_err(|source| DataplaneError::LoadProgram {
                program: name,
                source,
            })?;
        }
        for name in [FROM_NETDEV, TO_NETDEV, FROM_POD, TO_POD] {
            let prog: &mut SchedClassifier = program(&mut ebpf, name)?;
            prog.load().map_err(|source| DataplaneError::LoadProgram {
                program: name,
                source,
            })?;
        }
        write_node_config(&mut ebpf, &config)?;

        let lb = lb_maps(&ebpf)?;
        let mut table = ServiceTable::recover(lb.entries()?, lb.backends()?);
        table.set_pod_cidrs(config.pod_cidrs.clone());
        table.set_maglev(config.maglev_size, config.maglev_tables);
        Ok(Self {
            ebpf,
            config,
            adoption,
            table,
            links: Vec::new(),
            previous,
            replaced: Vec::new(),
        })
    }

    /// What the load found under the pin directory.
    pub fn adoption(&self) -> Adoption {
        self.adoption
    }

    /// Attaches the per-packet path to the node's uplink `ifname`: `strait_from_netdev` on
    /// ingress, `strait_to_netdev` on egress. The name is resolved in the calling thread's
    /// network namespace, so call this from a thread inside the node's namespace.
    pub fn attach_netdev(&mut self, ifname: &str) -> Result<(), DataplaneError> {
        self.attach_tc(
            ifname,
            [
                (FROM_NETDEV, TcAttachType::Ingress),
                (TO_NETDEV, TcAttachType::Egress),
            ],
            Target::Netdev(ifname.to_owned()),
        )
    }

    /// Attaches NetworkPolicy to a pod's host-side veth `ifname`: `strait_from_pod` on its
    /// ingress (what the pod sends), `strait_to_pod` on its egress (what it receives). Resolved
    /// in the calling thread's namespace, as [`Self::attach_netdev`].
    pub fn attach_endpoint(&mut self, ifname: &str) -> Result<(), DataplaneError> {
        self.attach_tc(
            ifname,
            [
                (FROM_POD, TcAttachType::Ingress),
                (TO_POD, TcAttachType::Egress),
            ],
            Target::Endpoint(ifname.to_owned()),
        )
    }

    /// Forgets a pod's veth: its pinned links go (the kernel detached them with the device).
    pub fn detach_endpoint(&mut self, ifname: &str) -> Result<(), DataplaneError> {
        let target = Target::Endpoint(ifname.to_owned());
        let (gone, kept) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|a| a.target == target);
        self.links = kept;
        for attachment in gone {
            let _detached = attachment
                .link
                .unpin()
                .map_err(|source| DataplaneError::PinLink {
                    target: ifname.to_owned(),
                    source: source.into(),
                })?;
        }
        Ok(())
    }

    fn attach_tc(
        &mut self,
        ifname: &str,
        hooks: [(&'static str, TcAttachType); 2],
        target_kind: Target,
    ) -> Result<(), DataplaneError> {
        for (name, hook) in hooks {
            let target = format!("{ifname} ({hook:?})");
            let attach_error = |source| DataplaneError::Attach {
                program: name,
                target: target.clone(),
                source,
            };
            let prog: &mut SchedClassifier = program(&mut self.ebpf, name)?;
            let id = prog.attach(ifname, hook).map_err(attach_error)?;
            let link =
                FdLink::try_from(prog.take_link(id).map_err(attach_error)?).map_err(|source| {
                    DataplaneError::PinLink {
                        target: target.clone(),
                        source: source.into(),
                    }
                })?;
            self.pin(target_kind.clone(), &format!("{name}@{ifname}"), link)?;
        }
        Ok(())
    }

    /// Conntrack entries, both families and directions.
    pub fn dump_ct(&self) -> Result<Vec<CtDump>, DataplaneError> {
        ct_maps(&self.ebpf)?.dump()
    }

    /// How full the conntrack maps are.
    pub fn ct_pressure(&self) -> Result<CtPressure, DataplaneError> {
        ct_maps(&self.ebpf)?.pressure()
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
        let inode = dir
            .metadata()
            .map_err(|source| DataplaneError::OpenCgroup {
                path: cgroup.to_path_buf(),
                source,
            })
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))?;
        for name in SOCK_PROGRAMS {
            let attach_error = |source| DataplaneError::Attach {
                program: name,
                target: cgroup.display().to_string(),
                source,
            };
            let dir = dir
                .try_clone()
                .map_err(|source| DataplaneError::OpenCgroup {
                    path: cgroup.to_path_buf(),
                    source,
                })?;
            let prog: &mut CgroupSockAddr = program(&mut self.ebpf, name)?;
            let id = prog
                .attach(dir, CgroupAttachMode::default())
                .map_err(attach_error)?;
            let link =
                FdLink::try_from(prog.take_link(id).map_err(attach_error)?).map_err(|source| {
                    DataplaneError::PinLink {
                        target: cgroup.display().to_string(),
                        source: source.into(),
                    }
                })?;
            // The cgroup's inode names the pin: paths can be long and contain slashes.
            self.pin(
                Target::Cgroup(cgroup.to_path_buf()),
                &format!("{name}@cgroup-{inode}"),
                link,
            )?;
        }
        Ok(())
    }

    fn pin(&mut self, target: Target, name: &str, link: FdLink) -> Result<(), DataplaneError> {
        let dir = self.config.pin_dir.join(LINKS_DIR);
        fs::create_dir_all(&dir).map_err(|source| DataplaneError::PinDir {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(name);
        // An earlier agent's link holds this pin: take it over (its fd keeps it attached).
        if let Some(index) = self.previous.iter().position(|(p, _)| *p == path) {
            let (_, old) = self.previous.swap_remove(index);
            let old = old.unpin().map_err(|source| DataplaneError::PinLink {
                target: path.display().to_string(),
                source: source.into(),
            })?;
            // A pod's veth has this agent's program attached already: the old one can go
            // now (dropping the last holder detaches it) rather than double-judge packets.
            if !matches!(target, Target::Endpoint(_)) {
                self.replaced.push(old);
            }
        }
        let link = link.pin(&path).map_err(|source| DataplaneError::PinLink {
            target: path.display().to_string(),
            source: source.into(),
        })?;
        self.links.push(Attachment { target, link });
        Ok(())
    }

    /// Detaches the attachments an earlier agent left, once this one has attached its own.
    /// Until then both run; each translates only what the other has not (a translated packet
    /// or connection no longer targets a service), so the overlap is harmless.
    ///
    /// Policy on pods' veths is kept while the veth exists: pod workers attach again as they
    /// adopt their pods, taking the pins over, so a restart never leaves a pod unenforced.
    pub fn release_previous(&mut self) {
        self.replaced.clear();
        let (endpoints, others): (Vec<_>, Vec<_>) =
            self.previous.drain(..).partition(|(path, _)| {
                endpoint_of_pin(path).is_some_and(|ifname| ifindex(ifname).is_some())
            });
        self.previous = endpoints;
        // Earlier attachments this agent did not take over (it no longer attaches there).
        for (path, link) in others {
            if let Err(error) = link.unpin() {
                warn!(path = %path.display(), %error, "failed to unpin an earlier agent's link");
            }
        }
    }

    /// Detaches socket-level translation from every cgroup it was attached to.
    pub fn detach_cgroups(&mut self) -> Result<(), DataplaneError> {
        let (cgroups, others) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|a| matches!(a.target, Target::Cgroup(_)));
        self.links = others;
        for attachment in cgroups {
            // Unpinning leaves this process the last holder; dropping the link detaches it.
            let _detached = attachment
                .link
                .unpin()
                .map_err(|source| DataplaneError::PinLink {
                    target: format!("{:?}", attachment.target),
                    source: source.into(),
                })?;
        }
        Ok(())
    }

    /// Makes the maps hold `spec`, writing in the order that keeps readers safe.
    pub fn upsert_service(&mut self, spec: &ServiceSpec) -> Result<(), DataplaneError> {
        let ops = self.table.upsert(spec)?;
        self.apply(&ops)
    }

    /// Makes the maps hold exactly `desired`: upserts every spec, then deletes every other
    /// service (what a restarted agent does after re-listing the API).
    pub fn sync_services(&mut self, desired: &[ServiceSpec]) -> Result<(), DataplaneError> {
        let ops = self.table.sync(desired)?;
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
                MapOp::PutBackend { id, backend } => match backend {
                    BackendEntry::V4(b) => insert(&mut self.ebpf, BACKENDS_V4, id, b)?,
                    BackendEntry::V6(b) => insert(&mut self.ebpf, BACKENDS_V6, id, b)?,
                },
                MapOp::DeleteBackend { id, ipv6 } => {
                    let name = if *ipv6 { BACKENDS_V6 } else { BACKENDS_V4 };
                    // The value type only sizes the map check; both share the u32 key.
                    if *ipv6 {
                        remove::<u32, Backend6>(&mut self.ebpf, name, id)?;
                    } else {
                        remove::<u32, Backend4>(&mut self.ebpf, name, id)?;
                    }
                }
                MapOp::PutService { key, value } => match key {
                    ServiceKey::V4(k) => insert(&mut self.ebpf, SERVICES_V4, k, value)?,
                    ServiceKey::V6(k) => insert(&mut self.ebpf, SERVICES_V6, k, value)?,
                },
                MapOp::PutMaglev { table, entries } => {
                    let map = self
                        .ebpf
                        .map_mut(MAGLEV_V4)
                        .ok_or(DataplaneError::MissingMap(MAGLEV_V4))?;
                    let mut array = Array::<_, u32>::try_from(map).map_err(|source| {
                        DataplaneError::MapType {
                            map: MAGLEV_V4,
                            source,
                        }
                    })?;
                    let base = u32::from(*table) * self.config.maglev_size;
                    for (offset, id) in (0u32..).zip(entries) {
                        array
                            .set(base + offset, id, 0)
                            .map_err(|source| write_error(MAGLEV_V4, &(base + offset), source))?;
                    }
                }
                MapOp::DeleteService { key } => match key {
                    ServiceKey::V4(k) => remove::<_, ServiceValue>(&mut self.ebpf, SERVICES_V4, k)?,
                    ServiceKey::V6(k) => remove::<_, ServiceValue>(&mut self.ebpf, SERVICES_V6, k)?,
                },
            }
        }
        Ok(())
    }

    /// Applies NetworkPolicy writes (see [`super::policy::diff`]) in their order.
    pub fn apply_policy(&mut self, ops: &[PolicyOp]) -> Result<(), DataplaneError> {
        for op in ops {
            match op {
                PolicyOp::SetIpcache { prefix, identity } => {
                    let value = IpcacheValue {
                        identity: *identity,
                        pad: 0,
                    };
                    lpm_mut::<u32, IpcacheValue>(&mut self.ebpf, IPCACHE_V4)?
                        .insert(&LpmKey::new(prefix.0, prefix.1), value, 0)
                        .map_err(|source| write_error(IPCACHE_V4, prefix, source))?;
                }
                PolicyOp::RemoveIpcache { prefix } => {
                    lpm_mut::<u32, IpcacheValue>(&mut self.ebpf, IPCACHE_V4)?
                        .remove(&LpmKey::new(prefix.0, prefix.1))
                        .map_err(|source| write_error(IPCACHE_V4, prefix, source))?;
                }
                PolicyOp::SetPolicy { key, rule } => {
                    let value = PolicyValue {
                        rule: *rule,
                        pad: 0,
                    };
                    lpm_mut::<PolicyKey, PolicyValue>(&mut self.ebpf, POLICY)?
                        .insert(&LpmKey::new(key.0, key.1), value, 0)
                        .map_err(|source| write_error(POLICY, key, source))?;
                }
                PolicyOp::RemovePolicy { key } => {
                    lpm_mut::<PolicyKey, PolicyValue>(&mut self.ebpf, POLICY)?
                        .remove(&LpmKey::new(key.0, key.1))
                        .map_err(|source| write_error(POLICY, key, source))?;
                }
                PolicyOp::SetEndpoint { ifindex, value } => {
                    insert(&mut self.ebpf, ENDPOINTS, ifindex, value)?;
                }
                PolicyOp::RemoveEndpoint { ifindex } => {
                    remove::<u32, EndpointValue>(&mut self.ebpf, ENDPOINTS, ifindex)?;
                }
            }
        }
        Ok(())
    }

    /// The NetworkPolicy maps as they are (what a restarted agent diffs against).
    pub fn policy_maps(&self) -> Result<PolicyMaps, DataplaneError> {
        PolicyMapSet {
            ipcache: lpm(&self.ebpf, IPCACHE_V4)?,
            policy: lpm(&self.ebpf, POLICY)?,
            endpoints: typed_map(&self.ebpf, ENDPOINTS)?,
        }
        .read()
    }

    /// The flow ring buffer and the counter of records it lost, for one reader (the agent's
    /// flow task); `None` once taken.
    pub fn take_flows(&mut self) -> Option<(RingBuf<MapData>, PerCpuArray<MapData, u64>)> {
        let ring = RingBuf::try_from(self.ebpf.take_map(FLOWS)?).ok()?;
        let lost = PerCpuArray::try_from(self.ebpf.take_map(FLOWS_LOST)?).ok()?;
        Some((ring, lost))
    }

    /// The services as the maps hold them.
    pub fn dump_services(&self) -> Result<Vec<ServiceDump>, DataplaneError> {
        lb_maps(&self.ebpf)?.services()
    }

    /// Traffic counters of every service, summed over CPUs.
    pub fn service_stats(&self) -> Result<Vec<ServiceStatsDump>, DataplaneError> {
        let map = self
            .ebpf
            .map(SERVICE_STATS)
            .ok_or(DataplaneError::MissingMap(SERVICE_STATS))?;
        let stats = PerCpuArray::<_, ServiceStats>::try_from(map).map_err(|source| {
            DataplaneError::MapType {
                map: SERVICE_STATS,
                source,
            }
        })?;
        read_service_stats(&stats, &self.dump_services()?)
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

    /// Runs one of the packet programs on `packet` with `BPF_PROG_TEST_RUN`, as the kernel would
    /// on a packet crossing the uplink. Used by packet tests and benchmarks; `repeat` runs it
    /// that many times and reports the mean duration (with `repeat > 1` the maps see every run).
    pub fn test_run(
        &mut self,
        hook: PacketHook,
        packet: &[u8],
        repeat: u32,
    ) -> Result<ProgramRun, DataplaneError> {
        let name = hook.program();
        let prog: &mut SchedClassifier = program(&mut self.ebpf, name)?;
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
                program: name,
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

/// The per-packet programs, by where they attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketHook {
    /// Ingress of the uplink (`strait_from_netdev`).
    FromNetdev,
    /// Egress of the uplink (`strait_to_netdev`).
    ToNetdev,
}

impl PacketHook {
    const fn program(self) -> &'static str {
        match self {
            Self::FromNetdev => FROM_NETDEV,
            Self::ToNetdev => TO_NETDEV,
        }
    }
}

/// The index of interface `ifname` in the calling thread's network namespace. (Not from
/// /sys/class/net: a process moved into a namespace with `nsenter --net` still sees the sysfs
/// of the namespace that mounted it.)
pub fn ifindex(ifname: &str) -> Option<u32> {
    let name = std::ffi::CString::new(ifname).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The pod veth a pinned link's file names, if it is a policy link (`<program>@<ifname>`).
fn endpoint_of_pin(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    let (program, ifname) = name.split_once('@')?;
    [FROM_POD, TO_POD].contains(&program).then_some(ifname)
}

/// Subdirectory of the pin directory holding pinned links.
const LINKS_DIR: &str = "links";

/// Opens the links an earlier agent pinned, leaving them pinned.
fn take_pinned_links(pin_dir: &Path) -> Result<Vec<(PathBuf, PinnedLink)>, DataplaneError> {
    let dir = pin_dir.join(LINKS_DIR);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut links = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        match PinnedLink::from_pin(&path) {
            Ok(link) => links.push((path, link)),
            Err(error) => {
                warn!(path = %path.display(), %error, "ignoring a pin that is not a link")
            }
        }
    }
    Ok(links)
}

/// Reads the layout version of maps pinned under `pin_dir`; unpins them if it is not ours.
fn adopt_or_replace(pin_dir: &Path) -> Result<Adoption, DataplaneError> {
    if !pin_dir.join(CONFIG).exists() {
        return Ok(Adoption::Fresh);
    }
    // A config map of another layout may not even open as ours: that is a mismatch too.
    let found = open_pinned::<Array<MapData, NodeConfig>>(pin_dir, CONFIG)
        .ok()
        .and_then(|config| config.get(&0, 0).ok())
        .map(|config| config.layout_version);
    if found == Some(LAYOUT_VERSION) {
        return Ok(Adoption::Adopted);
    }
    warn!(
        pin_dir = %pin_dir.display(),
        found = ?found,
        ours = LAYOUT_VERSION,
        "pinned maps have another layout version; replacing them"
    );
    let entries = fs::read_dir(pin_dir).map_err(|source| DataplaneError::PinDir {
        path: pin_dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("STRAIT_") {
            fs::remove_file(entry.path()).map_err(|source| DataplaneError::PinDir {
                path: entry.path(),
                source,
            })?;
        }
    }
    Ok(Adoption::Replaced { found })
}

fn write_node_config(ebpf: &mut Ebpf, config: &DataplaneConfig) -> Result<(), DataplaneError> {
    let map = ebpf
        .map_mut(CONFIG)
        .ok_or(DataplaneError::MissingMap(CONFIG))?;
    let mut array =
        Array::<_, NodeConfig>::try_from(map).map_err(|source| DataplaneError::MapType {
            map: CONFIG,
            source,
        })?;
    let value = NodeConfig {
        layout_version: LAYOUT_VERSION,
        node_ipv4: config.node_ipv4.map_or(0, |a| u32::from(a).to_be()),
        snat_port_min: SNAT_PORTS.0,
        snat_port_max: SNAT_PORTS.1,
        maglev_size: config.maglev_size,
        node_ipv6: config.node_ipv6.map_or([0; 4], |a| ipv6_words(a.octets())),
    };
    array
        .set(0, value, 0)
        .map_err(|source| write_error(CONFIG, &0, source))
}

fn ct_maps(ebpf: &Ebpf) -> Result<CtMaps<&MapData>, DataplaneError> {
    Ok(CtMaps {
        v4: typed_map(ebpf, CT_V4)?,
        v6: typed_map(ebpf, CT_V6)?,
    })
}

fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, DataplaneError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program>,
{
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or(DataplaneError::MissingProgram(name))
}

fn typed_map<'a, K: aya::Pod, V: aya::Pod>(
    ebpf: &'a Ebpf,
    name: &'static str,
) -> Result<HashMap<&'a MapData, K, V>, DataplaneError> {
    let map = ebpf.map(name).ok_or(DataplaneError::MissingMap(name))?;
    HashMap::try_from(map).map_err(|source| DataplaneError::MapType { map: name, source })
}

fn lpm<'a, K: aya::Pod, V: aya::Pod>(
    ebpf: &'a Ebpf,
    name: &'static str,
) -> Result<LpmTrie<&'a MapData, K, V>, DataplaneError> {
    let map = ebpf.map(name).ok_or(DataplaneError::MissingMap(name))?;
    LpmTrie::try_from(map).map_err(|source| DataplaneError::MapType { map: name, source })
}

fn lpm_mut<'a, K: aya::Pod, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<LpmTrie<&'a mut MapData, K, V>, DataplaneError> {
    let map = ebpf.map_mut(name).ok_or(DataplaneError::MissingMap(name))?;
    LpmTrie::try_from(map).map_err(|source| DataplaneError::MapType { map: name, source })
}

fn typed_map_mut<'a, K: aya::Pod, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<HashMap<&'a mut MapData, K, V>, DataplaneError> {
    let map = ebpf.map_mut(name).ok_or(DataplaneError::MissingMap(name))?;
    HashMap::try_from(map).map_err(|source| DataplaneError::MapType { map: name, source })
}

fn insert<K: aya::Pod + std::fmt::Debug, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    key: &K,
    value: &V,
) -> Result<(), DataplaneError> {
    typed_map_mut::<K, V>(ebpf, name)?
        .insert(key, value, 0)
        .map_err(|source| write_error(name, key, source))
}

fn remove<K: aya::Pod + std::fmt::Debug, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    key: &K,
) -> Result<(), DataplaneError> {
    typed_map_mut::<K, V>(ebpf, name)?
        .remove(key)
        .map_err(|source| write_error(name, key, source))
}

fn lb_maps(ebpf: &Ebpf) -> Result<LbMaps<&MapData>, DataplaneError> {
    Ok(LbMaps {
        services4: typed_map(ebpf, SERVICES_V4)?,
        backends4: typed_map(ebpf, BACKENDS_V4)?,
        services6: typed_map(ebpf, SERVICES_V6)?,
        backends6: typed_map(ebpf, BACKENDS_V6)?,
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
