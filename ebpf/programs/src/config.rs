//! The node configuration the agent writes (`STRAIT_CONFIG`).

use aya_ebpf::{macros::map, maps::Array};
use strait_ebpf_common::config::NodeConfig;

#[map]
static STRAIT_CONFIG: Array<NodeConfig> = Array::pinned(1, 0);

/// The node's configuration; all zero until the agent writes it.
#[inline(always)]
pub(crate) fn node() -> NodeConfig {
    STRAIT_CONFIG.get(0).copied().unwrap_or(NodeConfig {
        layout_version: 0,
        node_ipv4: 0,
        snat_port_min: 0,
        snat_port_max: 0,
        maglev_size: 0,
        node_ipv6: [0; 4],
    })
}
