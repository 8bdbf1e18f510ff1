//! Node configuration the programs read, and the layout version of the pinned maps.

/// Version of the map layout (names, key and value types, sizes). A new agent reuses pinned
/// maps only when their version equals its own; bump it whenever any map type changes.
pub const LAYOUT_VERSION: u32 = 9;

/// The single entry of the config array (index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// [`LAYOUT_VERSION`] of the agent that wrote the maps.
    pub layout_version: u32,
    /// The node's IPv4 address, used as the source of source-NATed flows; 0 if unset.
    pub node_ipv4: u32,
    /// Range of source ports for SNAT, host order.
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    /// Entries per Maglev table (a prime); 0 disables Maglev.
    pub maglev_size: u32,
    /// The node's IPv6 address (words in network byte order); all zero if unset.
    pub node_ipv6: [u32; 4],
}
const _: () = assert!(size_of::<NodeConfig>() == 32);
