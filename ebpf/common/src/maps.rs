//! Names and sizes of the maps the BPF object declares, used by the loader and by `netctl`.
//!
//! A map's name is also its pin name under the node's pin directory
//! (`/sys/fs/bpf/strait` in production, a per-instance directory in tests and local clusters).

/// Service entries in slot layout, keyed by [`crate::service::Service4Key`].
pub const SERVICES_V4: &str = "STRAIT_SVC4";
/// Backends by id, keyed by a `u32` backend id, valued by [`crate::service::Backend4`].
pub const BACKENDS_V4: &str = "STRAIT_BE4";
/// IPv6 service entries in slot layout, keyed by [`crate::service::Service6Key`].
pub const SERVICES_V6: &str = "STRAIT_SVC6";
/// IPv6 backends by id (ids shared with IPv4), valued by [`crate::service::Backend6`].
pub const BACKENDS_V6: &str = "STRAIT_BE6";
/// IPv4 conntrack, keyed by [`crate::ct::Ct4Key`] (an LRU hash).
pub const CT_V4: &str = "STRAIT_CT4";
/// IPv6 conntrack, keyed by [`crate::ct::Ct6Key`] (an LRU hash, sized like the IPv4 one).
pub const CT_V6: &str = "STRAIT_CT6";
/// The node's configuration and the layout version (an array of one [`crate::config::NodeConfig`]).
pub const CONFIG: &str = "STRAIT_CONFIG";
/// Socket reverse NAT (an LRU hash), keyed by [`crate::sock::SockRevNat4Key`].
pub const SOCK_REVNAT_V4: &str = "STRAIT_SKRN4";
/// IPv6 socket reverse NAT (an LRU hash), keyed by [`crate::sock::SockRevNat6Key`].
pub const SOCK_REVNAT_V6: &str = "STRAIT_SKRN6";
/// Session affinity (an LRU hash), keyed by [`crate::sock::Affinity4Key`].
pub const AFFINITY_V4: &str = "STRAIT_AFF4";
/// Maglev lookup tables of services reached from outside (an array of backend ids; table `t`
/// occupies entries `t * size .. (t + 1) * size`).
pub const MAGLEV_V4: &str = "STRAIT_MAGLEV4";
/// Per-CPU [`crate::service::ServiceStats`] indexed by reverse-NAT index.
pub const SERVICE_STATS: &str = "STRAIT_SVC_STATS";
/// IPv4 address → identity (an LPM trie of network-order `u32` addresses).
pub const IPCACHE_V4: &str = "STRAIT_IPCACHE4";
/// Endpoint policy entries (an LPM trie of [`crate::policy::PolicyKey`]).
pub const POLICY: &str = "STRAIT_POLICY";
/// Pod endpoints by host-side veth ifindex, valued by [`crate::policy::EndpointValue`].
pub const ENDPOINTS: &str = "STRAIT_ENDPOINTS";
/// Policy conntrack (an LRU hash of [`crate::ct::Ct4Key`], the direction being the hook).
pub const POLICY_CT_V4: &str = "STRAIT_PCT4";
/// Flow records (a ring buffer of [`crate::policy::FlowRecord`]).
pub const FLOWS: &str = "STRAIT_FLOWS";
/// Flow records lost because the ring buffer was full (a per-CPU array of one `u64`).
pub const FLOWS_LOST: &str = "STRAIT_FLOWS_LOST";
/// Per-CPU packet drop counters indexed by [`crate::drop::DropReason`].
pub const DROPS: &str = "STRAIT_DROPS";

/// Capacity of the service map: slots of every service together (each service takes one
/// master entry plus one per backend), enough for 100,000 services of up to 9 backends.
pub const SERVICES_MAX: u32 = 1 << 20;
/// Capacity of the backend map.
pub const BACKENDS_MAX: u32 = 1 << 19;
/// Default capacity of the conntrack map (entries, both directions counted). The agent sizes it
/// from memory at load time (`map_max_entries`); this is what the object declares.
pub const CT_MAX: u32 = 1 << 18;
/// Capacity of the socket reverse-NAT map (live translated sockets).
pub const SOCK_REVNAT_MAX: u32 = 1 << 18;
/// Capacity of the ipcache (pods and ipBlock prefixes).
pub const IPCACHE_MAX: u32 = 1 << 18;
/// Capacity of the policy trie (entries of every endpoint on the node).
pub const POLICY_MAX: u32 = 1 << 20;
/// Capacity of the endpoint map (pods on the node).
pub const ENDPOINTS_MAX: u32 = 1 << 12;
/// Bytes of the flow ring buffer (a power of two, a multiple of the page size).
pub const FLOWS_BYTES: u32 = 1 << 22;
/// Capacity of the affinity map (client × service pairs).
pub const AFFINITY_MAX: u32 = 1 << 16;
/// Default Maglev table size (Cilium's default, a prime: 65 KB of backend ids per table).
pub const MAGLEV_SIZE: u32 = 16_381;
/// Default number of Maglev tables (frontends reached from outside with their own table).
pub const MAGLEV_TABLES: u32 = 256;
/// Entries of the service counter array: every reverse-NAT index (a `u16`).
pub const SERVICE_STATS_MAX: u32 = 1 << 16;
/// Flags of the service and backend maps. They are sized for the largest cluster but usually
/// mostly empty, so they are not preallocated: memory follows the number of entries.
/// (`BPF_F_NO_PREALLOC`.)
pub const LB_MAP_FLAGS: u32 = 1;
